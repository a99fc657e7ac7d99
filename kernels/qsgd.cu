// placeholder: filled in by the qsgd work
#include "launch.hpp"
