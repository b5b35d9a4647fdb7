"""Where a hole gets its keypoints: machine events, signal analysis and human annotations."""
