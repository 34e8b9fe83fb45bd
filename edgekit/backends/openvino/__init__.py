"""OpenVINO on x86/ARM CPUs (run.py); INT8 by NNCF (convert.py)."""
