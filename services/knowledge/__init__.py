"""The offline knowledge, shared by the treebuilder (which builds it), the searcher (whose
strategies read it), the report and the benchmark: the offline dataset (``dataset``), KOP
resource curves (``curves``), per-KOP trees (``trees``), :class:`Knowledge` for one space
(``knowledge``) and its Redis repository (``store``)."""

from services.knowledge.dataset import KopCurve, OfflineDataset
from services.knowledge.knowledge import Knowledge

__all__ = ["Knowledge", "KopCurve", "OfflineDataset"]
