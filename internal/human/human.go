// Package human formats numbers for people: byte sizes and text progress
// bars, the same in the CLI and in chat.
package human

import (
	"fmt"
	"strings"
)

// Bytes is n in binary units: 512 B, 1.5 KiB, 3.2 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Bar draws frac (0..1, clamped) as a bar of width cells of full and empty.
func Bar(frac float64, width int, full, empty string) string {
	n := max(0, min(width, int(frac*float64(width))))
	return "[" + strings.Repeat(full, n) + strings.Repeat(empty, width-n) + "]"
}
