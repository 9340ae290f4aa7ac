"""The layer compiler: the golden model's streaming step lowered to accelerator programs.

``symbols`` holds the symbolic tensors the golden dataflow runs on, ``backend`` the ops
backend that emits instructions for them, ``compiler`` the per-segment programs, their host
data and state, and ``host`` the packing of exported weights into SRAM words.
"""
