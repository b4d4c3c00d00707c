.PHONY: demo test bench
# The main job end to end: a real Dendrite (built once), Ferry's bot on its embedded defaults, an admin's
# !export full in chat, progress, the download link, verification. `go run ./cmd/bot demo --sample` is the offline variant.
# HOMESERVER=synapse runs it on Synapse 1.160 (a chroot installed once, as root) instead.
HOMESERVER ?= dendrite
demo:
	HOMESERVER=$(HOMESERVER) bash scripts/demo
# Everything the tests need is brought up by scripts/test itself.
test:
	bash scripts/test
bench:
	go test -run '^$$' -bench . -benchtime 1x ./archive/
