"""A model file that imports a package that does not exist."""

import prunecli_no_such_package_anywhere  # noqa: F401
