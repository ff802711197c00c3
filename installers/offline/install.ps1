# Atelier offline installer for Windows: installs the bundle this file sits in, with no network.
#
#   powershell -ExecutionPolicy Bypass -File install.ps1 [-Prefix P] [-Python PY] [-ExpectManifest SHA256]
#   powershell -ExecutionPolicy Bypass -File install.ps1 -VerifyOnly
#   powershell -ExecutionPolicy Bypass -File install.ps1 -Uninstall [-Prefix P]
#
# The twin of install.sh: checks every file of the bundle against manifest.json (size, SHA-256, no
# file missing or unlisted, the OS, CPU and Python of the target) before installing anything; then a
# fresh virtual environment in P\venv from the bundle's wheels only (pip --no-index, no pip
# configuration); registers the model pack; adds Start-menu and desktop shortcuts to atelier-gui.exe
# (no console window); ends with `atelier doctor`. Default prefix: %LOCALAPPDATA%\Programs\Atelier.
[CmdletBinding()]
param(
    [string]$Prefix = "",
    [string]$Python = "",
    [string]$ExpectManifest = "",
    [switch]$VerifyOnly,
    [switch]$Uninstall,
    [switch]$NoShortcuts
)
$ErrorActionPreference = "Stop"
$Here = Split-Path -Parent $MyInvocation.MyCommand.Path
if (-not $Prefix) { $Prefix = Join-Path $env:LOCALAPPDATA "Programs\Atelier" }
$Venv = Join-Path $Prefix "venv"

function Say([string]$msg) { Write-Host "[atelier install] $msg" }
function Fail([string]$msg) { [Console]::Error.WriteLine("install.ps1: $msg Nothing was installed."); exit 1 }

$StartMenu = Join-Path ([Environment]::GetFolderPath("Programs")) "Atelier.lnk"
$DesktopLnk = Join-Path ([Environment]::GetFolderPath("Desktop")) "Atelier.lnk"

if ($Uninstall) {
    if (-not (Test-Path (Join-Path $Venv "Scripts\atelier.exe"))) { Fail "no Atelier installed in $Prefix." }
    Remove-Item -Recurse -Force $Venv
    Remove-Item -Force -ErrorAction SilentlyContinue $StartMenu, $DesktopLnk
    Say "removed Atelier from $Prefix. Your models, conversations and settings stay where 'atelier doctor' showed them."
    exit 0
}

# ---- 1. verify everything before installing anything ------------------------------------------
$ManifestPath = Join-Path $Here "manifest.json"
if (-not (Test-Path -PathType Leaf $ManifestPath)) { Fail "the bundle has no manifest.json." }
$Digest = (Get-FileHash -Algorithm SHA256 $ManifestPath).Hash.ToLower()
if ($ExpectManifest -and $Digest -ne $ExpectManifest.Trim().ToLower()) {
    Fail "manifest.json has sha256 $Digest, not the expected $ExpectManifest`: the bundle was altered."
}
try { $Manifest = Get-Content -Raw -Encoding UTF8 $ManifestPath | ConvertFrom-Json } catch { Fail "manifest.json is not valid JSON." }
if ($Manifest.format -ne "atelier-offline-bundle" -or -not $Manifest.files -or -not $Manifest.target) {
    Fail "manifest.json is not an Atelier bundle manifest."
}
if ($Manifest.target.os -ne "win32") { Fail "this bundle is for $($Manifest.target.os), not Windows." }

if (-not $Python) {
    $want = $Manifest.target.python
    $py = Get-Command py -ErrorAction SilentlyContinue
    if ($py) { $Python = (& py "-$want" -c "import sys; print(sys.executable)" 2>$null) }
    if (-not $Python) { $Python = (Get-Command python -ErrorAction SilentlyContinue).Source }
    if (-not $Python) { Fail "no Python $want found (give one with -Python)." }
}
$have = (& $Python -c "import sys, platform; print('%d.%d %s' % (sys.version_info[0], sys.version_info[1], platform.machine().lower()))").Trim().Split(" ")
if ($have[0] -ne $Manifest.target.python) { Fail "this bundle is for Python $($Manifest.target.python); $Python is $($have[0])." }
if ($have[1] -ne $Manifest.target.machine) { Fail "this bundle is for $($Manifest.target.machine); this machine is $($have[1])." }

$Listed = @{}
foreach ($f in $Manifest.files) {
    $p = [string]$f.path
    if (-not $p -or $p.StartsWith("/") -or $p.Contains("\") -or $p.Contains(":") -or ($p.Split("/") -contains "..")) {
        Fail "manifest.json lists an unsafe entry: $p."
    }
    $Listed[$p] = $f
}
$root = (Resolve-Path $Here).Path.TrimEnd("\") + "\"
foreach ($item in Get-ChildItem -Recurse -Force -File $Here) {
    $rel = $item.FullName.Substring($root.Length).Replace("\", "/")
    if ($rel -eq "manifest.json") { continue }
    if (-not $Listed.ContainsKey($rel)) { Fail "$rel is in the bundle but not in its manifest (added after it was built)." }
}
$total = 0
foreach ($rel in ($Listed.Keys | Sort-Object)) {
    $f = $Listed[$rel]
    $path = Join-Path $Here ($rel.Replace("/", "\"))
    if (-not (Test-Path -PathType Leaf $path)) { Fail "$rel is missing from the bundle." }
    $item = Get-Item -Force $path
    if ($item.Attributes -band [IO.FileAttributes]::ReparsePoint) { Fail "$rel is not a plain file." }
    if ($item.Length -ne [int64]$f.size) { Fail "$rel has $($item.Length) bytes; the manifest says $($f.size) (altered or cut short)." }
    if ((Get-FileHash -Algorithm SHA256 $path).Hash.ToLower() -ne ([string]$f.sha256).ToLower()) {
        Fail "$rel does not match its sha256 in the manifest (altered or damaged)."
    }
    $total += $item.Length
}
Say ("verified {0} files ({1:N2} GB); manifest sha256 {2}" -f $Listed.Count, ($total / 1e9), $Digest)
if ($VerifyOnly) { exit 0 }

# ---- 2. a fresh environment, from the bundle's wheels only ------------------------------------
New-Item -ItemType Directory -Force $Prefix | Out-Null
$Old = ""
if (Test-Path $Venv) { $Old = "$Venv.previous"; if (Test-Path $Old) { Remove-Item -Recurse -Force $Old }; Move-Item $Venv $Old }
foreach ($v in "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT") { Remove-Item "Env:$v" -ErrorAction SilentlyContinue }
$env:PIP_CONFIG_FILE = "NUL"; $env:PIP_NO_INDEX = "1"; $env:PIP_DISABLE_PIP_VERSION_CHECK = "1"; $env:PIP_NO_CACHE_DIR = "1"
$Wheels = Join-Path $Here "wheels"
$VPy = Join-Path $Venv "Scripts\python.exe"
try {
    Say "creating $Venv"
    & $Python -m venv $Venv; if ($LASTEXITCODE) { throw "venv" }
    & $VPy -m pip install -q --no-index --find-links $Wheels -r (Join-Path $Here "requirements.txt"); if ($LASTEXITCODE) { throw "pip" }
    & $VPy -m pip install -q --no-index --no-deps --find-links $Wheels -r (Join-Path $Here "requirements-nodeps.txt"); if ($LASTEXITCODE) { throw "pip" }
} catch {
    if (Test-Path $Venv) { Remove-Item -Recurse -Force $Venv }
    if ($Old) { Move-Item $Old $Venv; Say "the previous install in $Venv was put back" }
    [Console]::Error.WriteLine("install.ps1: the install failed (see above)."); exit 1
}
if ($Old) { Remove-Item -Recurse -Force $Old }

# ---- 3. models, shortcuts, doctor ---------------------------------------------------------------
$Atelier = Join-Path $Venv "Scripts\atelier.exe"
if (Test-Path (Join-Path $Here "models\pack.json")) {
    Say "registering the bundle's models"
    & $Atelier models import (Join-Path $Here "models"); if ($LASTEXITCODE) { [Console]::Error.WriteLine("install.ps1: the models could not be registered (the app is installed)."); exit 1 }
}
if (-not $NoShortcuts) {
    $shell = New-Object -ComObject WScript.Shell
    foreach ($lnk in $StartMenu, $DesktopLnk) {
        $s = $shell.CreateShortcut($lnk)
        $s.TargetPath = Join-Path $Venv "Scripts\atelier-gui.exe"  # a gui-script: no console window
        $s.WorkingDirectory = $env:USERPROFILE
        $ico = Join-Path $Venv "Lib\site-packages\desktop_app\resources\icons\atelier.ico"
        if (Test-Path $ico) { $s.IconLocation = $ico }
        $s.Save()
    }
}
Say "installed: $(Join-Path $Venv 'Scripts\atelier-gui.exe') (Start menu: Atelier)"
& $Atelier doctor
