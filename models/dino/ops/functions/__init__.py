from .ms_deform_attn_func import (MSDeformAttnFunction, ms_deform_attn, ms_deform_attn_compiled,
                                  ms_deform_attn_core_pytorch)
from .ms_deform_attn_gather import ms_deform_attn_core_gather

__all__ = ["MSDeformAttnFunction", "ms_deform_attn", "ms_deform_attn_compiled", "ms_deform_attn_core_gather", "ms_deform_attn_core_pytorch"]
