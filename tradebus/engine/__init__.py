"""Engine: messages, bus, clocks, the kernel that wires a run, cache and portfolio."""
