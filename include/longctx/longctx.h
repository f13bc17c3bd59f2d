// longctx: everything a user includes. Ops are declared in longctx/ops/*.h.
#pragma once

#include "longctx/context.h"
#include "longctx/dtype.h"
#include "longctx/error.h"
#include "longctx/io/safetensors.h"
#include "longctx/ops/attention.h"
#include "longctx/ops/causal_conv1d.h"
#include "longctx/ops/linear_scan.h"
#include "longctx/ops/rmsnorm.h"
#include "longctx/ops/scan_operator.h"
#include "longctx/ops/selective_scan.h"
#include "longctx/ops/ssd.h"
#include "longctx/tensor.h"
#include "longctx/model/config.h"
#include "longctx/ops/add.h"
#include "longctx/model/arena.h"
#include "longctx/ops/elementwise.h"
