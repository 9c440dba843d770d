"""factory_assets: the Dagster code location of the factory data platform (`definitions.py`).

Dagster's beta and preview APIs are used knowingly here (MultiPartitionMapping, BackfillPolicy, custom
automation conditions, the user-code automation sensor); their warnings are silenced when the package is
imported, before any of its modules defines an asset, so a code server's log carries only what needs
attention.
"""

import warnings

from dagster import BetaWarning, PreviewWarning

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
