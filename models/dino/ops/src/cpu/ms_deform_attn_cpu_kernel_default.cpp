// CPU kernels compiled for the baseline instruction set of the build.
#include <cmath>
#include <cstdint>

#include "ms_deform_attn_cpu_kernel.h"

namespace msda_cpu {
namespace isa_default {
#include "ms_deform_attn_cpu_kernel_impl.h"
}  // namespace isa_default
}  // namespace msda_cpu
