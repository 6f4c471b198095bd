"""The fuzzing harness (benchmarks/bench_fuzz.py, tests/test_fuzz.py): mutated ONNX files
through import + compile, mutated build directories through load + simulate; every outcome a
clear error or an accepted input, never a crash or a hang (``runner`` says how each is told
apart, ``corpus`` what is mutated, ``onnx_mutations`` / ``program_mutations`` how)."""
