"""DSA kernel folder: naive.py is the float32 reference, the other files the Triton kernels."""
