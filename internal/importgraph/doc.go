// Package importgraph holds the test that guards the shape of the
// project: which of its packages may import which, which may call C
// themselves, and which must build without cgo at all (so that tools that
// only speak MQTT, read bundles or do the learner's math never need OpenCV
// or TensorFlow Lite). A new package, or a new arrow between packages,
// is a decision: make it in the tables of the test.
package importgraph
