"""shiftflow: shift-quantized CNNs from ONNX to an FPGA/embedded accelerator."""

__version__ = "0.1.0"
