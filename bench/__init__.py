"""vadstream benchmarks: accuracy, compute, memory and event latency against Silero, TEN and WebRTC VAD.

Run ``python -m bench --help`` (or ``make bench``). Results go to ``bench/RESULTS.md``, plots to
``bench/*.png`` and raw figures to ``bench/results/*.json``.
"""
