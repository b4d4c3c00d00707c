// The import helper's wire protocol, in a module of its own with no
// dependencies: Ferry (the main module) and the helper (tools/dendrite, a
// module under Dendrite's path that builds against Dendrite v0.15.2) both
// require it through a replace directive, so neither's dependencies reach
// the other's build.
module github.com/ferry-matrix/ferry/importer/dendrite/wire

go 1.26
