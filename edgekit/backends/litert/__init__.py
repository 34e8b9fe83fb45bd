"""LiteRT (TFLite) on ARM CPUs without an NVIDIA GPU: run.py runs .tflite files, convert.py makes them."""
