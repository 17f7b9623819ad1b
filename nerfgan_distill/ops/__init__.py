"""Public ops. Each takes backend='auto'|'cuda'|'triton'|'cpu'|'torch'."""
from .bias_act import bias_act

__all__ = ["bias_act"]
