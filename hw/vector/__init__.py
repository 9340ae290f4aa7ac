"""The vector unit and the tensor mover: engines over the VMEM/PMEM banks (docs/ISA.md).

``formats`` (pure Python) defines the word formats and the parameter-word layouts; ``ports``
the port signatures every engine uses; one module per engine family holds its RTL.
"""
