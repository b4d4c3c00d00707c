.PHONY: demo test bench
# The main job on the embedded default: export the sample server, encrypted, then verify and inspect it.
demo:
	go run ./cmd/bot demo
# Everything the tests need is brought up by scripts/test itself.
test:
	bash scripts/test
bench:
	go test -run '^$$' -bench . -benchtime 1x ./archive/
