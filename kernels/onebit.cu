// placeholder: filled in by the onebit work
#include "launch.hpp"
