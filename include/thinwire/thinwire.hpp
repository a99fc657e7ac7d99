// thinwire: communication-compressed allreduce for data-parallel training.
#pragma once

#include "thinwire/communicator.hpp"
#include "thinwire/config.hpp"
#include "thinwire/dtype.hpp"
#include "thinwire/error.hpp"
#include "thinwire/layer.hpp"
#include "thinwire/reducer.hpp"
#include "thinwire/stats.hpp"
#include "thinwire/tensor_view.hpp"
#include "thinwire/transport.hpp"
#include "thinwire/version.hpp"
