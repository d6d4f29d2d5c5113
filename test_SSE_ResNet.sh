#!/usr/bin/env bash
# Test SSE-ResNet (the released 4conv-c+concat form unless VARIANT says otherwise), as the original
# test_SSE_ResNet.sh did. Settings come from the environment: see tools/sse_workflow.sh.
BACKBONE=resnet
VARIANT_DEFAULT=4conv-c+concat
source "$(dirname "$0")/tools/sse_workflow.sh"
sse_test
