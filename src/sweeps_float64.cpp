// The float64 instances of the core's sweeps (see sweep_instances.hpp).
#include "sweep_instances.hpp"

RESODE_SWEEP_INSTANCES(, double)
