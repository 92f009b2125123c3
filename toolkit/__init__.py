"""npu-preflight: will this weight folder and model_config start on this machine?"""

__version__ = "0.1.0"
