// The float32 and float64 instances of the neural CDE sweeps (see cde_instances.hpp).
#include "cde_instances.hpp"

RESODE_CDE_INSTANCES(, double)
RESODE_CDE_INSTANCES(, float)
