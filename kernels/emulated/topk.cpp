// placeholder: filled in by the topk work
#include "launch.hpp"
