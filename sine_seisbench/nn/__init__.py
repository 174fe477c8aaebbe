"""Building blocks of the SINE network, one idea per module."""
