"""Block documents looked up on the server by name or by type, never from one page.

``read_block_documents`` returns one page: the API's default limit
(``PREFECT_API_DEFAULT_LIMIT``, 200) of documents sorted by name. A plant with more
blocks than that (a line of devices is already hundreds) would not see the ones sorting
last, so the name goes to the server as a filter, and a type is read through its own
endpoint, which returns every document of the type."""

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import BlockDocumentFilter, BlockDocumentFilterName
from prefect.client.schemas.objects import BlockDocument
from prefect.exceptions import PrefectHTTPStatusError


def documents_named(name: str, client: SyncPrefectClient | None = None) -> list[BlockDocument]:
    """Every (non-anonymous) block document called ``name``, of any block type."""
    if client is None:
        with get_client(sync_client=True) as own:
            return documents_named(name, own)
    wanted = BlockDocumentFilter(name=BlockDocumentFilterName(any_=[name]))
    # The client's read_block_documents takes no filter; its endpoint does.
    response = client.request("POST", "/block_documents/filter", json={
        "block_documents": wanted.model_dump(mode="json", exclude_unset=True),
        "include_secrets": False,
    })
    return BlockDocument.model_validate_list(response.json())


def documents_of_type(slug: str, client: SyncPrefectClient | None = None) -> list[BlockDocument]:
    """Every block document of the block type ``slug``; none if the type was never saved."""
    if client is None:
        with get_client(sync_client=True) as own:
            return documents_of_type(slug, own)
    try:
        return client.read_block_documents_by_type(slug)
    except PrefectHTTPStatusError as exc:  # the sync client does not map 404 to ObjectNotFound
        if exc.response.status_code == 404:
            return []
        raise
