// placeholder: filled in by the two_phase work
#include "launch.hpp"
