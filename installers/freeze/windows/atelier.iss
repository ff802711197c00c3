; Inno Setup script: wraps the frozen folder (installers/freeze/build.py on Windows) in one installer.
;   iscc /DSourceDir=dist\atelier-0.1.0-windows-x86_64-cpu /DAppVersion=0.1.0 installers\freeze\windows\atelier.iss
; Per-user install (no admin rights needed) into %LOCALAPPDATA%\Programs\Atelier; Start-menu entry
; and an optional desktop shortcut to atelier-gui.exe (built windowed: no console window); the
; uninstaller removes the program and leaves the user's models, conversations and settings.
#ifndef SourceDir
  #error Pass /DSourceDir=<the frozen folder>
#endif
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6F0B5C1E-7A43-4C52-9D1B-A7E1E0C4A7B1}
AppName=Atelier
AppVersion={#AppVersion}
AppPublisher=Atelier contributors
DefaultDirName={localappdata}\Programs\Atelier
DefaultGroupName=Atelier
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=atelier-{#AppVersion}-windows-setup
SetupIconFile=..\..\..\resources\icons\atelier.ico
UninstallDisplayIcon={app}\atelier-gui.exe
Compression=lzma2/normal
SolidCompression=no
DiskSpanning=no
LicenseFile=..\..\..\LICENSE
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "Create a &desktop shortcut"; GroupDescription: "Shortcuts:"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Atelier"; Filename: "{app}\atelier-gui.exe"; WorkingDir: "{userdocs}"
Name: "{group}\Uninstall Atelier"; Filename: "{uninstallexe}"
Name: "{userdesktop}\Atelier"; Filename: "{app}\atelier-gui.exe"; WorkingDir: "{userdocs}"; Tasks: desktopicon

[Run]
Filename: "{app}\atelier-gui.exe"; Description: "Start Atelier"; Flags: nowait postinstall skipifsilent
