"""redundancy: embeddings, exact + fuzzy duplicates across sources, clusters and diversity caps (spec §7)."""

import os
from collections import Counter
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from prism_assets.core.contracts import (
    DIVERSITY_CAPS,
    NEAR_DUPLICATES,
    PROMPT_CLUSTERS,
    PROMPT_EMBEDDINGS,
    PROMPT_MINHASHES,
)
from prism_assets.core.report import counts_markdown, histogram_markdown, markdown_table
from prism_assets.curation.redundancy import clustering, dedup
from prism_assets.curation.redundancy.embedders import embedding_tables, get_embedder
from prism_assets.curation.redundancy.inputs import MissingInput, pool_texts, representatives_of
from prism_assets.defs.metadata import asset_attributes, partition_metadata, table_metadata
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource

STAGE = "redundancy"
ALL_PARTITIONS = dg.AllPartitionMapping()


class EmbeddingConfig(dg.Config):
    embedder: str = Field(
        default="minilm", description="'minilm' (sentence-transformers) or 'lexical' (TF-IDF + SVD, CPU scale)"
    )
    model: str | None = Field(
        default=None, description="Another sentence-transformers model id or folder, for embedder 'minilm'"
    )
    workers: int = Field(
        default=0, description="Processes for the lexical embedder (0: one per core); 'minilm' uses torch's threads"
    )


class DedupConfig(dg.Config):
    jaccard_threshold: float = Field(
        default=dedup.JACCARD_THRESHOLD,
        description="MinHash Jaccard similarity at which two prompts are near-duplicates",
    )


class ClusterConfig(dg.Config):
    seed: int = Field(default=0, description="k-means seed (same inputs + seed = same cluster ids)")
    semantic_duplicate_cosine: float = Field(
        default=0.95,
        description="Cosine similarity to a better-ranked prompt "
        "of the same cluster at which a prompt is a semantic duplicate",
    )


class CapsConfig(dg.Config):
    max_per_cluster_per_epoch: int = Field(
        default=16, description="Prompts of one cluster the sampler may take per epoch, best cluster_rank first"
    )
    rare_cluster_max_size: int = Field(default=2, description="Clusters this small form the rare tail")
    tail_reserve_share: float = Field(
        default=0.05, description="Share of each cell's budget the sampler reserves for the rare tail"
    )


def build(parts: Partitions) -> list:
    @dg.asset(
        partitions_def=parts.source,
        deps=["prompt_pool"],
        kinds={"delta", "pytorch"},
        **asset_attributes("prompt_embeddings", STAGE),
        description="One L2-normalized embedding per pool prompt (all-MiniLM-L6-v2 by default, or the "
        "lexical TF-IDF + SVD embedder), with the embedder name and version.",
    )
    def prompt_embeddings(
        context: dg.AssetExecutionContext, config: EmbeddingConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        source = context.partition_key
        embedder = get_embedder(config.embedder, config.model)
        workers = config.workers or os.cpu_count() or 1
        done = {"rows": 0}

        def batches() -> Iterator[pa.Table]:
            for table in embedding_tables(pool_texts(store, source), source, config.embedder, config.model, workers):
                done["rows"] += table.num_rows
                context.log.info(f"{source}: embedded {done['rows']:,} prompts with {embedder.version}")
                yield table

        commit = store.replace_partition("prompt_embeddings", PROMPT_EMBEDDINGS, batches, "source_dataset", source)
        return dg.MaterializeResult(
            metadata=partition_metadata(
                store,
                context.partition_key,
                "prompt_embeddings",
                commit,
                embedder_version=embedder.version,
                dim=embedder.dim,
            )
        )

    @dg.asset(
        partitions_def=parts.source,
        deps=["prompt_pool"],
        kinds={"delta", "python"},
        **asset_attributes("prompt_minhashes", STAGE),
        description="Exact-duplicate hash (normalized text) and MinHash signature (character 5-grams) of every "
        "pool prompt: the per-source half of duplicate detection.",
    )
    def prompt_minhashes(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        store = lakehouse.get()
        source = context.partition_key
        done = {"rows": 0}

        def batches() -> Iterator[pa.Table]:
            for texts in pool_texts(store, source):
                table = dedup.signature_table(texts, source)
                done["rows"] += table.num_rows
                context.log.info(f"{source}: signed {done['rows']:,} prompts")
                yield table

        commit = store.replace_partition("prompt_minhashes", PROMPT_MINHASHES, batches, "source_dataset", source)
        return dg.MaterializeResult(
            metadata=partition_metadata(store, context.partition_key, "prompt_minhashes", commit)
        )

    @dg.asset(
        deps=[dg.AssetDep("prompt_minhashes", partition_mapping=ALL_PARTITIONS)],
        kinds={"delta", "scipy"},
        **asset_attributes("near_duplicates", STAGE),
        description="Duplicate groups of every pool prompt, matched across all sources at once (exact "
        "normalized-text hash + MinHash LSH at a Jaccard threshold); the representative of a group is its smallest "
        "prompt id. One run covers every source: it goes stale when any source's signatures change.",
    )
    def near_duplicates(
        context: dg.AssetExecutionContext, config: DedupConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        signatures = store.read_table("prompt_minhashes")
        context.log.info(f"grouping {signatures.num_rows:,} prompts of every source")
        table = dedup.duplicate_table(signatures, config.jaccard_threshold)
        commit = store.replace_table("near_duplicates", NEAR_DUPLICATES, lambda: [table], ("source_dataset",))
        per_source = (
            table.group_by("source_dataset")
            .aggregate([("is_representative", "count"), ("is_representative", "sum")])
            .to_pylist()
        )
        rates = [
            (r["source_dataset"], r["is_representative_count"],
             round(1 - r["is_representative_sum"] / r["is_representative_count"], 4))
            for r in sorted(per_source, key=lambda r: r["source_dataset"])
        ]
        matches = Counter(table.column("match_type").to_pylist())
        cross_source = pc.sum(pc.greater(pc.list_value_length(table.column("dup_group_sources")), 1)).as_py() or 0
        duplicates = table.num_rows - (pc.sum(table.column("is_representative")).as_py() or 0)
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "near_duplicates",
                commit,
                duplicate_rate=duplicates / table.num_rows if table.num_rows else 0.0,
                cross_source_matches=cross_source,
                match_types=dg.MetadataValue.md(counts_markdown(matches, "match")),
                per_source=dg.MetadataValue.md(markdown_table(["source", "prompts", "duplicate rate"], rates)),
            )
        )

    @dg.asset(
        partitions_def=parts.skill,
        kinds={"delta", "scikitlearn"},
        deps=[
            "near_duplicates",
            *(dg.AssetDep(name, partition_mapping=ALL_PARTITIONS) for name in ("bucket_labels", "prompt_embeddings")),
        ],
        **asset_attributes("prompt_clusters", STAGE),
        description="k-means clusters of the duplicate-group representatives of one skill bucket, one clustering "
        "per ctx bucket; cluster_size, cluster_rank (distance to centroid) and SemDeDup semantic duplicates.",
    )
    def prompt_clusters(
        context: dg.AssetExecutionContext, config: ClusterConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        skill = context.partition_key
        try:
            rows = representatives_of(store, skill)
        except MissingInput as err:
            raise dg.Failure(description=str(err)) from err
        table, histogram, summary = clustering.cluster_skill(
            rows, skill, config.seed, config.semantic_duplicate_cosine, context.log.info
        )
        commit = store.replace_partition("prompt_clusters", PROMPT_CLUSTERS, lambda: [table], "skill_bucket", skill)
        versions = sorted(set(rows.column("embedder_version").to_pylist()))
        return dg.MaterializeResult(
            metadata=partition_metadata(
                store,
                context.partition_key,
                "prompt_clusters",
                commit,
                embedder_version=", ".join(versions) or "none",
                clusters=dg.MetadataValue.md(
                    markdown_table(["ctx", "prompts", "clusters", "semantic duplicates"], summary)
                ),
                cluster_size_histogram=dg.MetadataValue.md(
                    histogram_markdown(histogram, f"{skill}: cluster sizes per ctx bucket", "prompts in cluster")
                ),
            )
        )

    @dg.asset(
        partitions_def=parts.skill,
        deps=["prompt_clusters"],
        kinds={"delta", "python"},
        **asset_attributes("diversity_caps", STAGE),
        description="Per-prompt diversity caps the sampling manifest reads: at most max_per_cluster_per_epoch "
        "prompts of a cluster per epoch (best cluster_rank first, semantic duplicates excluded) and the "
        "rare-cluster tail with its reserved share.",
    )
    def diversity_caps(
        context: dg.AssetExecutionContext, config: CapsConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        skill = context.partition_key
        clusters = store.read_table("prompt_clusters", filter=pc.field("skill_bucket") == skill)
        table = clustering.caps_table(
            clusters, config.max_per_cluster_per_epoch, config.rare_cluster_max_size, config.tail_reserve_share
        )
        commit = store.replace_partition("diversity_caps", DIVERSITY_CAPS, lambda: [table], "skill_bucket", skill)
        rare = table.column("is_rare_cluster")
        return dg.MaterializeResult(
            metadata=partition_metadata(
                store,
                context.partition_key,
                "diversity_caps",
                commit,
                eligible_per_epoch=int(pc.sum(table.column("within_cap")).as_py() or 0),
                rare_tail_prompts=int(pc.sum(rare).as_py() or 0),
                rare_tail_share=float(pc.mean(rare).as_py() or 0.0) if table.num_rows else 0.0,
            )
        )

    return [prompt_embeddings, prompt_minhashes, near_duplicates, prompt_clusters, diversity_caps]
