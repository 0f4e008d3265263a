# csnspec: inline-begin

# Triton kernels: a stand-in until the kernels branch lands (no Triton path here).
_TRITON = False
