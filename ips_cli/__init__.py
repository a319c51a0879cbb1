"""`ips`: the command-line client of the Image Processing System (upload, wait, status, download)."""
