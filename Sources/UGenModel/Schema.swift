/// The model's configuration and stage cuts live in UGenSchema, a leaf the store can use without the
/// kernels (so the data side links no BLAS); everything that imports the model sees them too.
@_exported import UGenSchema
