"""The golden reference as it was before the float64-carrier optimisation (model.py, arith.py: frozen
copies), for bench/test_golden.py only."""
