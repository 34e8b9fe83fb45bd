"""The FP32 reference, the one latency protocol, evaluation, accuracy decisions and the results schema."""
