#!/usr/bin/env bash
# Packs the Distillation package, checks its contents, and builds and runs a throwaway consumer that references it
# BY PACKAGE ID from a local folder feed — the way users reference it. Run by .ci/run; exits non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== pack"
dotnet pack "$root/src/Distillation/Distillation.csproj" -c Release -o "$work/feed" --nologo -v q
nupkg=$(ls "$work"/feed/Distillation.*.nupkg)
snupkg=$(ls "$work"/feed/Distillation.*.snupkg)
version=$(basename "$nupkg" .nupkg); version=${version#Distillation.}

echo "== package contents ($(basename "$nupkg"))"
python3 - "$nupkg" "$snupkg" <<'PY'
import sys, zipfile
package, symbols = sys.argv[1], sys.argv[2]
names = zipfile.ZipFile(package).namelist()
for n in sorted(names):
    print("  " + n)
required = ["PACKAGE.md", "lib/net10.0/Distillation.dll", "lib/net10.0/Distillation.xml", "Distillation.nuspec"]
missing = [r for r in required if r not in names]
nuspec = zipfile.ZipFile(package).read("Distillation.nuspec").decode()
for needle in ["<readme>PACKAGE.md</readme>", "<license type=\"expression\">MIT</license>", "System.Numerics.Tensors"]:
    if needle not in nuspec:
        missing.append("nuspec: " + needle)
symbol_names = zipfile.ZipFile(symbols).namelist()
print("  symbols: " + ", ".join(n for n in symbol_names if n.endswith(".pdb")))
if "lib/net10.0/Distillation.pdb" not in symbol_names:
    missing.append("symbols: lib/net10.0/Distillation.pdb")
if "TorchSharp" in nuspec:
    missing.append("the core package must not depend on TorchSharp")
if missing:
    print("package check FAILED: " + "; ".join(missing)); sys.exit(1)
print("package check ok")
PY

echo "== consumer"
mkdir -p "$work/consumer"
cd "$work/consumer"
cat > nuget.config <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="local" value="$work/feed" />
  </packageSources>
</configuration>
XML
# The consumer's own package folder, so a stale copy of this version in the machine's cache is never used.
export NUGET_PACKAGES="$work/packages"
cat > Consumer.csproj <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="Distillation" Version="$version" />
  </ItemGroup>
</Project>
XML
cat > Program.cs <<'CS'
using System;
using Distillation;

float[] teacher = [MathF.Log(0.8f), MathF.Log(0.15f), MathF.Log(0.05f)];
float[] student = [MathF.Log(0.6f), MathF.Log(0.3f), MathF.Log(0.1f)];
float[] gradient = new float[3];
LossResult r = new DistillationLoss(Divergence.ForwardKL).Compute(
    TeacherDistribution.FromLogits(teacher, 3), StudentDistribution.FromLogits(student, 3), gradient);
double expected = 0.8 * Math.Log(0.8 / 0.6) + 0.15 * Math.Log(0.15 / 0.3) + 0.05 * Math.Log(0.05 / 0.1);
Console.WriteLine($"forward KL {r.Value:F6} (expected {expected:F6}); gradient [{string.Join(", ", gradient)}]");
return Math.Abs(r.Value - expected) < 1e-6 && Math.Abs(gradient[0] + 0.2f) < 1e-6 ? 0 : 1;
CS
# nuget.config adds the local feed to the machine's own sources, which serve the package's dependencies.
dotnet restore -v q
dotnet build -c Release --no-restore --nologo -v q
dotnet run -c Release --no-build
echo "consumer test passed"
