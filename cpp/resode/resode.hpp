// Umbrella header of the resode core: a C++17 header-only library, no Python inside.
#pragma once
#include "activations.hpp"
#include "adaptive.hpp"
#include "constraints.hpp"
#include "epoch.hpp"
#include "fields.hpp"
#include "linalg.hpp"
#include "losses.hpp"
#include "optimizers.hpp"
#include "stepper.hpp"
#include "sweep.hpp"
#include "tableau.hpp"
#include "threads.hpp"
