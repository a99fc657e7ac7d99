// placeholder: filled in by the elementwise work
#include "launch.hpp"
