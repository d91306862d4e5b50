import { toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import type { Server } from "@grpc/grpc-js";

function collect(file: DescFile, seen: Map<string, DescFile>): void {
  if (seen.has(file.proto.name)) return;
  for (const dep of file.dependencies) collect(dep, seen);
  seen.set(file.proto.name, file);
}

/**
 * Adds server reflection (v1 and v1alpha) fed from the generated file descriptors,
 * with every dependency, so grpcurl and buf curl see exactly what buf compiled.
 */
export function addReflection(server: Server, files: DescFile[], serviceNames: string[]): void {
  const all = new Map<string, DescFile>();
  for (const file of files) collect(file, all);
  const encoded = [...all.values()].map((file) => Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto)));
  // @grpc/reflection reads a proto-loader PackageDefinition; only fileDescriptorProtos matters.
  const definition = { descriptors: { format: "Protocol Buffer 3 DescriptorProto", type: {}, fileDescriptorProtos: encoded } };
  new ReflectionService(definition as never, { services: serviceNames }).addToServer(server);
}
