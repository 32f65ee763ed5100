"""The local lab cluster: real upstream binaries with simulated accelerators."""
