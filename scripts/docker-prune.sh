#!/bin/sh
# Drop from the image's site-packages what no shopfloor flow uses, to keep the image
# under 1.2 GB (it was 1.77 GB before this):
#   docker-prune.sh SITE_PACKAGES
# Spark: RocksDB state store, Spark Connect and its REPL, Kubernetes, YARN, ZooKeeper (HA
# masters), streaming, Hive and its metastore (the flows use the in-memory catalog),
# MLlib and GraphX, the Scala compiler (REPL only), netty's natives for other platforms.
# pyarrow: Flight (libarrow_python needs Substrait), headers. botocore: unused service models. Every package's
# bundled test suite. (The dashboard's streamlit is not in the image: see
# docker-wheelhouse.sh.)
# scripts/docker-smoke.py then proves Spark local + JDBC + Parquet still work.
set -eu
site=$1
jars=$site/pyspark/jars
rm -rf "$jars"/connect-repl
for pattern in 'rocksdbjni-*' 'kubernetes-*' 'spark-kubernetes*' 'hive-*' 'spark-hive*' \
    'datanucleus-*' 'derby-*' 'spark-connect*' 'spark-repl*' 'scala-compiler-*' \
    'spark-mllib*' 'breeze*' 'spire*' 'lapack-*' 'arpack-*' 'blas-*' 'algebra_*' \
    'cats-kernel*' 'arpack_combined*' 'JTransforms-*' 'JLargeArrays-*' 'spark-graphx*' \
    'jpam-*' 'libthrift-*' 'libfb303-*' 'javolution-*' 'jdo-api-*' 'javax.jdo-*' \
    'HikariCP-*' 'commons-dbcp-*' 'transaction-api-*' 'vertx-*' 'volcano-*' 'jjwt-*' \
    'zjsonpatch-*' 'spark-yarn*' 'spark-streaming*' 'zookeeper*' 'curator-*' \
    'netty-tcnative-boringssl-static-*-osx-*' 'netty-tcnative-boringssl-static-*-windows-*' \
    'netty-tcnative-boringssl-static-*-aarch_64*' 'netty-transport-native-*-osx-*' \
    'netty-transport-native-*-aarch_64*' 'netty-transport-native-*-riscv64*'; do
  find "$jars" -maxdepth 1 -name "$pattern" -delete
done
rm -rf "$site"/pyarrow/include "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/_flight*.so
# botocore: the API models of the AWS services the flows call (S3, Secrets Manager, and
# STS/SSO for credentials); the other 400 are 25 MB.
for service in "$site"/botocore/data/*/; do
  case $(basename "$service") in
    s3|secretsmanager|sts|sso|sso-oidc|signin) ;;
    *) rm -rf "$service" ;;
  esac
done
find "$site" -depth -type d \( -name tests -o -name test \) -path '*/site-packages/*/*' \
  -exec rm -rf {} +
