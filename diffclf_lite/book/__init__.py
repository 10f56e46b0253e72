"""Helpers the book's chapters call, kept apart from the library: the chapter 1 explorer (`explore`), chapter 3's
corruptions and CNN baseline (`corruptions`, `baselines`), chapter 3b's alternatives (`alternatives`), chapter 4's
binding benchmark (`binding`), the machine profiles every chapter reads (`profiles`), and the course tooling that
makes student versions (`assignments`)."""
