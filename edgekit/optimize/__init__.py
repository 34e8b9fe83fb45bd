"""Making a model smaller and deciding how far: structured pruning (prune.py, its search prune_search.py,
recovery training recover.py), 2:4 sparsity (sparsity.py), and the accuracy guard's ladder of quantized
builds (ladder.py). Latency reaches it as a callback (`LatencyProbe`) and verdicts come from
`measure/decide.py`: it never imports a backend."""
