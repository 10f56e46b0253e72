"""What the classifiers read: labelled images and the prompts or class names that are their candidate conditions.

- `hub`: the one table of hub ids (pinned revisions, fp16 weights) and the errors that teach when one fails.
- `images`: any image to RGB, and the official code's resize, crop and scaling.
- `prompts` (+ `classnames/*.json`): the paper's class names and templates, a user's class list or prompt CSV.
- `datasets`: the paper's datasets (torchvision), image folders, synthetic shapes that exist offline.
- `fingerprints`: content hashes of files and folders (cached per process), for resumed runs.
- `digits`: scikit-learn's digits (offline), CIFAR-10 and ImageNet folders for the class-conditional chapter.
- `miniature`: the miniature world of captioned images (coloured handwritten digits) and its zero-shot tasks.
- `scenes`: captions of two-object images and their distractors (attribute binding).
- `winoground`: Winoground's examples and its text, image and group scores.
"""
