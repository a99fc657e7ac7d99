// placeholder: filled in by the lowrank work
#include "launch.hpp"
