"""Human review of keypoint labels: the session (no UI) and the Textual app over it."""
