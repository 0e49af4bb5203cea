"""The harness: the only package that imports both from_scratch and keras_impl.

It builds both sides from one architecture description, loads identical weights into both, runs the same batch
and checks that losses, outputs and every gradient agree (harness.py), then prints the evidence (report.py).
"""
