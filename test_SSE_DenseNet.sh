#!/usr/bin/env bash
# Test SSE-DenseNet (the released 3conv-s+concat form unless VARIANT says otherwise), as the original
# test_SSE_DenseNet.sh did. Settings come from the environment: see tools/sse_workflow.sh.
BACKBONE=densenet
VARIANT_DEFAULT=3conv-s+concat
source "$(dirname "$0")/tools/sse_workflow.sh"
sse_test
