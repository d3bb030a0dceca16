"""Data for the workbook: the synthetic captioned world, local image folders, caption files, and
real images that ship inside installed packages. ``from unirepclip.data import ...`` for all."""
from .synthetic import (  # noqa: F401
    BACKGROUNDS,
    COLOUR_RGB,
    COLOURS,
    PHRASINGS,
    POSITION_WORDS,
    SHAPES,
    SIZE_WORDS,
    SPLITS,
    WORLD_VERSION,
    PromptTemplate,
    SyntheticSamples,
    SyntheticShapes,
    SyntheticWorld,
    all_captions,
    caption_templates,
    zeroshot_task,
)
from .files import (  # noqa: F401
    IMAGE_EXTENSIONS,
    CaptionDataset,
    ImageFolderDataset,
    UnreadableImage,
    load_image,
    read_classnames,
    verify_image,
)
from .packaged import (  # noqa: F401
    DIGIT_CLASSES,
    SKIMAGE_PHOTOS,
    SkimagePhotos,
    SklearnDigits,
    digits_zeroshot_task,
)
