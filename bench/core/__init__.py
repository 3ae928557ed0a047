"""The vocabulary every layer shares, torch-free: errors, names, taps, knobs, cards, the registries, the spec."""
