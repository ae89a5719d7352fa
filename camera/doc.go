// Package camera captures frames with OpenCV (gocv) from a V4L2 device, a
// GStreamer pipeline or RTSP/MJPEG URL, a video file or a folder of images,
// reopening a source that fails with backoff; it keeps only the latest
// frame, gates frames on motion, prepares them as the backbone's input,
// decodes images from outside within size limits read before any pixel is
// decoded, and draws and encodes snapshots.
package camera
