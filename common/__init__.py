"""What the server, the camera and the benchmarks share: the cameraId grammar, the fd limit."""
